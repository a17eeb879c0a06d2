//! systemd's notify protocol (`sd_notify(3)`), without libsystemd: one datagram per state
//! change to the socket named by `$NOTIFY_SOCKET` (a path, or an abstract name when it
//! starts with '@'). `halo run` sends `READY=1` once its links are open and the engine has
//! started, `WATCHDOG=1` from the heartbeat loop at half of `$WATCHDOG_USEC`, `STATUS=...`
//! when the cluster changes and `STOPPING=1` at shutdown. Without `$NOTIFY_SOCKET` (not
//! started by systemd, or `Type=simple`) every call does nothing.
//!
//! Sending never blocks the heartbeat thread: the socket is non-blocking and a failed send
//! is dropped (systemd's socket is never full in practice; a watchdog ping lost would be
//! sent again half an interval later).

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// A connection to systemd's notify socket (or nothing when not run by systemd).
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    next_ping: Option<Instant>,
    status: String,
    status_at: Option<Instant>,
}

/// The status line is recomputed at most this often.
const STATUS_EVERY: Duration = Duration::from_secs(1);

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`, then removes them from
    /// the environment so the resource agents and respawned daemons halo starts don't
    /// inherit them (sd_notify's `unset_environment`). Call before any thread starts.
    pub fn from_env() -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET").ok();
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        for v in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(v);
        }
        let watchdog = watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id());
        let mut n = match socket.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Notifier::new(s).unwrap_or_default(),
            None => Notifier::default(),
        };
        n.watchdog = watchdog;
        n
    }

    /// A notifier sending to `socket` (`/run/systemd/notify` or `@abstract-name`).
    pub fn new(socket: &str) -> io::Result<Notifier> {
        let addr = match socket.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())?
            }
            None => SocketAddr::from_pathname(socket)?,
        };
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(Notifier { target: Some((sock, addr)), ..Notifier::default() })
    }

    /// Whether a notify socket was given.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog interval systemd expects (`WatchdogSec=`), if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one or more `KEY=value` lines. Errors are returned for tests; the daemon
    /// ignores them.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let Some((sock, addr)) = &self.target else { return Ok(()) };
        sock.send_to_addr(state.as_bytes(), addr).map(|_| ())
    }

    /// `READY=1` with a first status line; starts the watchdog clock.
    pub fn ready(&mut self, now: Instant, status: &str) {
        self.status = status.to_string();
        let _ = self.send(&format!("READY=1\nSTATUS={status}"));
        if self.watchdog.is_some() {
            let _ = self.send("WATCHDOG=1");
        }
        self.next_ping = self.watchdog.map(|w| now + w / 2);
    }

    /// Whether the status line should be recomputed now (at most once per second, and
    /// only under systemd): it costs a snapshot of the engine.
    pub fn status_due(&mut self, now: Instant) -> bool {
        if !self.enabled() || self.status_at.is_some_and(|t| now < t + STATUS_EVERY) {
            return false;
        }
        self.status_at = Some(now);
        true
    }

    /// `STATUS=...` when it differs from the last one sent.
    pub fn status(&mut self, status: &str) {
        if self.enabled() && self.status != status {
            self.status = status.to_string();
            let _ = self.send(&format!("STATUS={status}"));
        }
    }

    /// `STOPPING=1` (with a status saying why).
    pub fn stopping(&mut self, status: &str) {
        self.status = status.to_string();
        let _ = self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }

    /// Sends `WATCHDOG=1` when half the interval has passed since the last ping. Called on
    /// every turn of the heartbeat loop: a loop that hangs stops pinging.
    pub fn watchdog_tick(&mut self, now: Instant) {
        let (Some(w), Some(next)) = (self.watchdog, self.next_ping) else { return };
        if now >= next {
            let _ = self.send("WATCHDOG=1");
            self.next_ping = Some(now + w / 2);
        }
    }

    /// How long the loop may sleep before the next watchdog ping is due (None: no watchdog).
    pub fn until_ping(&self, now: Instant) -> Option<Duration> {
        self.next_ping.map(|n| n.saturating_duration_since(now))
    }
}

/// The watchdog interval of `$WATCHDOG_USEC`, when `$WATCHDOG_PID` is absent or names
/// this process (sd_watchdog_enabled's rule).
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// Whether stderr is connected to the journal: `$JOURNAL_STREAM` is `DEVICE:INODE` of the
/// stream systemd gave us, and it must still be stderr (not inherited by a child whose
/// stderr was redirected).
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let v = v.to_string_lossy();
    let Some((dev, ino)) = v.split_once(':') else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    match nix::sys::stat::fstat(std::io::stderr()) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("halo-notify-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn recv(s: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).expect("datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let d = tempdir("path");
        let path = d.join("notify.sock");
        let server = UnixDatagram::bind(&path).expect("bind");
        server.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let mut n = Notifier::new(path.to_str().expect("utf8")).expect("notifier");
        n.watchdog = Some(Duration::from_millis(200));
        let t0 = Instant::now();
        n.ready(t0, "1 of 2 nodes up");
        assert_eq!(recv(&server), "READY=1\nSTATUS=1 of 2 nodes up");
        assert_eq!(recv(&server), "WATCHDOG=1");
        assert_eq!(n.until_ping(t0), Some(Duration::from_millis(100)));
        // Not yet due: nothing sent.
        n.watchdog_tick(t0 + Duration::from_millis(50));
        n.status("1 of 2 nodes up"); // unchanged: not sent
        n.status("2 of 2 nodes up");
        assert_eq!(recv(&server), "STATUS=2 of 2 nodes up");
        n.watchdog_tick(t0 + Duration::from_millis(100));
        assert_eq!(recv(&server), "WATCHDOG=1");
        assert!(n.status_due(t0));
        assert!(!n.status_due(t0 + Duration::from_millis(500)));
        assert!(n.status_due(t0 + Duration::from_secs(1)));
        n.stopping("releasing resources");
        assert_eq!(recv(&server), "STOPPING=1\nSTATUS=releasing resources");
        server.set_nonblocking(true).expect("nonblocking");
        assert!(server.recv(&mut [0u8; 64]).is_err(), "nothing more was sent");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("halo-notify-test-{}", std::process::id());
        let server = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).expect("addr"))
            .expect("bind abstract");
        server.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let n = Notifier::new(&format!("@{name}")).expect("notifier");
        n.send("READY=1").expect("send");
        assert_eq!(recv(&server), "READY=1");
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let mut n = Notifier::default();
        assert!(!n.enabled());
        n.ready(Instant::now(), "x");
        n.watchdog_tick(Instant::now());
        n.send("READY=1").expect("no-op");
        assert!(!n.status_due(Instant::now()));
        assert_eq!(n.until_ping(Instant::now()), None);
    }

    #[test]
    fn watchdog_environment() {
        assert_eq!(watchdog_interval(Some("10000000"), None, 7), Some(Duration::from_secs(10)));
        assert_eq!(watchdog_interval(Some("10000000"), Some("7"), 7), Some(Duration::from_secs(10)));
        assert_eq!(watchdog_interval(Some("10000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }
}
