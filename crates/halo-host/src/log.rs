//! Heartbeat-style log sinks: `logfile`, `debugfile`, syslog (`logfacility`) and stderr.
//!
//! Lines in files and on stderr use Heartbeat's `syslogmsgfmt` layout (cluster-glue
//! `cl_log.c`), e.g. `Nov 22 00:34:01 nodea halo: [1234]: info: Link nodeb:eth0 up.`;
//! syslog gets RFC 3164 datagrams `<PRI>Nov 22 00:34:01 halo[1234]: msg` on a Unix datagram
//! socket (`/dev/log`).
//!
//! Logging is called from the heartbeat thread, so it must stay cheap: files are opened once
//! in append mode and written with one `write(2)` per line, the syslog socket is
//! non-blocking (a full socket drops the line), and a failed write is counted, never retried
//! or reported upwards.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Severity of a log line, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
    Crit,
}

impl Level {
    /// The word Heartbeat prints for this level (cluster-glue `prio2str`).
    pub fn word(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Crit => "CRIT",
        }
    }

    /// The syslog severity (LOG_DEBUG … LOG_CRIT).
    fn severity(self) -> u8 {
        match self {
            Level::Debug => 7,
            Level::Info => 6,
            Level::Warn => 4,
            Level::Error => 3,
            Level::Crit => 2,
        }
    }
}

/// Where and how to log; mirrors `logfile`, `debugfile`, `logfacility` and `debug` of ha.cf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Gets Info and above.
    pub logfile: Option<PathBuf>,
    /// Gets everything, Debug included when `debug_level > 0`.
    pub debugfile: Option<PathBuf>,
    /// Syslog facility name (`daemon`, `local0`, …); `None` or `"none"` disables syslog.
    pub facility: Option<String>,
    /// Program name in every line ("halo").
    pub ident: String,
    /// Node name in file lines (`uname -n`).
    pub node: String,
    /// Debug messages are dropped at 0.
    pub debug_level: u8,
    /// Also write every line to stderr (foreground runs).
    pub stderr: bool,
    /// The syslog socket; normally `/dev/log`.
    pub syslog_socket: PathBuf,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            logfile: None,
            debugfile: None,
            facility: None,
            ident: "halo".to_string(),
            node: nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
            debug_level: 0,
            stderr: false,
            syslog_socket: PathBuf::from("/dev/log"),
        }
    }
}

/// The syslog facility code of a `logfacility` name.
pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

/// How long to wait before trying an absent syslog socket again.
const SYSLOG_RETRY: Duration = Duration::from_secs(10);

struct Sinks {
    logfile: Option<File>,
    debugfile: Option<File>,
    syslog: Option<UnixDatagram>,
    syslog_retry_at: Instant,
}

/// The log sinks of the process. `Send + Sync`; cheap enough to call from the heartbeat
/// thread (one formatted line, one write per sink).
pub struct Logger {
    cfg: LogConfig,
    facility: Option<u8>,
    pid: u32,
    debug_level: AtomicU8,
    failed: AtomicU64,
    sinks: Mutex<Sinks>,
    /// stderr is the journal (`set_stderr_journal`).
    journal: AtomicBool,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn connect_syslog(path: &Path) -> Option<UnixDatagram> {
    let s = UnixDatagram::unbound().ok()?;
    s.connect(path).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

impl Logger {
    /// Opens the configured sinks. Fails on an unknown facility or a log file that cannot be
    /// opened; an absent syslog socket only means syslog output is skipped (and retried).
    pub fn new(cfg: LogConfig) -> io::Result<Logger> {
        let facility = match cfg.facility.as_deref() {
            None | Some("none") => None,
            Some(name) => Some(facility_code(name).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("unknown log facility {name:?}"))
            })?),
        };
        // Let libc load the time zone now rather than on the first log line (localtime_r
        // reads it once).
        let _ = local_time(0);
        let sinks = Sinks {
            logfile: cfg.logfile.as_deref().map(open_append).transpose()?,
            debugfile: cfg.debugfile.as_deref().map(open_append).transpose()?,
            syslog: facility.and_then(|_| connect_syslog(&cfg.syslog_socket)),
            syslog_retry_at: Instant::now() + SYSLOG_RETRY,
        };
        Ok(Logger {
            debug_level: AtomicU8::new(cfg.debug_level),
            facility,
            pid: std::process::id(),
            failed: AtomicU64::new(0),
            sinks: Mutex::new(sinks),
            journal: AtomicBool::new(false),
            cfg,
        })
    }

    /// The current debug level (`debug` in ha.cf).
    pub fn debug_level(&self) -> u8 {
        self.debug_level.load(Ordering::Relaxed)
    }

    /// Changes the debug level at run time (SIGUSR1/SIGUSR2 in Heartbeat).
    pub fn set_debug_level(&self, level: u8) {
        self.debug_level.store(level, Ordering::Relaxed);
    }

    /// Says that stderr is the journal (systemd's `$JOURNAL_STREAM`): stderr lines then
    /// carry no date, host, ident or pid (journald records them) but start with the
    /// `<N>` severity prefix journald reads (`SyslogLevelPrefix=`), e.g.
    /// `<4>WARN: Late heartbeat`. Files and syslog are unchanged.
    pub fn set_stderr_journal(&self, on: bool) {
        self.journal.store(on, Ordering::Relaxed);
    }

    /// Number of lines a sink failed to take (write errors, full syslog socket).
    pub fn failed_writes(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Sinks> {
        // A panic elsewhere while logging must not silence the logger.
        self.sinks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs one message. Debug messages are dropped while the debug level is 0.
    pub fn log(&self, level: Level, msg: &str) {
        if level == Level::Debug && self.debug_level() == 0 {
            return;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let tm = local_time(now);
        let mut sinks = self.lock();
        let wants_line =
            sinks.debugfile.is_some() || self.cfg.stderr || (level >= Level::Info && sinks.logfile.is_some());
        if wants_line {
            let line = format!(
                "{} {} {}: [{}]: {}: {}\n",
                file_stamp(&tm),
                self.cfg.node,
                self.cfg.ident,
                self.pid,
                level.word(),
                msg
            );
            let mut failed = 0;
            if level >= Level::Info {
                if let Some(f) = &mut sinks.logfile {
                    failed += u64::from(f.write_all(line.as_bytes()).is_err());
                }
            }
            if let Some(f) = &mut sinks.debugfile {
                failed += u64::from(f.write_all(line.as_bytes()).is_err());
            }
            if self.cfg.stderr {
                let ok = if self.journal.load(Ordering::Relaxed) {
                    io::stderr().lock().write_all(journal_line(level, msg).as_bytes()).is_ok()
                } else {
                    io::stderr().lock().write_all(line.as_bytes()).is_ok()
                };
                failed += u64::from(!ok);
            }
            if failed > 0 {
                self.failed.fetch_add(failed, Ordering::Relaxed);
            }
        }
        if let Some(facility) = self.facility {
            self.syslog(&mut sinks, facility, level, &tm, msg);
        }
    }

    fn syslog(&self, sinks: &mut Sinks, facility: u8, level: Level, tm: &Tm, msg: &str) {
        if sinks.syslog.is_none() {
            let now = Instant::now();
            if now < sinks.syslog_retry_at {
                return;
            }
            sinks.syslog_retry_at = now + SYSLOG_RETRY;
            sinks.syslog = connect_syslog(&self.cfg.syslog_socket);
        }
        let Some(sock) = &sinks.syslog else { return };
        let pri = u16::from(facility) * 8 + u16::from(level.severity());
        let datagram = format!("<{pri}>{} {}[{}]: {}", syslog_stamp(tm), self.cfg.ident, self.pid, msg);
        match sock.send(datagram.as_bytes()) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                // The syslog daemon went away or restarted: reconnect once, then give up on
                // this line.
                self.failed.fetch_add(1, Ordering::Relaxed);
                sinks.syslog = connect_syslog(&self.cfg.syslog_socket);
                sinks.syslog_retry_at = Instant::now() + SYSLOG_RETRY;
                if let Some(s) = &sinks.syslog {
                    if s.send(datagram.as_bytes()).is_ok() {
                        self.failed.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Reopens the log files (after logrotate moved them; SIGHUP) and reconnects syslog. A
    /// file that cannot be reopened keeps its old handle.
    pub fn reopen(&self) {
        let mut sinks = self.lock();
        if let Some(p) = &self.cfg.logfile {
            if let Ok(f) = open_append(p) {
                sinks.logfile = Some(f);
            }
        }
        if let Some(p) = &self.cfg.debugfile {
            if let Ok(f) = open_append(p) {
                sinks.debugfile = Some(f);
            }
        }
        if self.facility.is_some() {
            sinks.syslog = connect_syslog(&self.cfg.syslog_socket);
            sinks.syslog_retry_at = Instant::now() + SYSLOG_RETRY;
        }
    }
}

/// A stderr line when stderr is the journal: the severity prefix journald parses, the
/// level word operators grep for, the message.
fn journal_line(level: Level, msg: &str) -> String {
    format!("<{}>{}: {}\n", level.severity(), level.word(), msg)
}

/// The parts of a local time a log line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tm {
    mon: usize,
    mday: i32,
    hour: i32,
    min: i32,
    sec: i32,
}

fn local_time(secs: u64) -> Tm {
    let t = libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX);
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid for the
    // call. localtime_r reads the zone set up by tzset() and touches no file afterwards.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return Tm { mon: 0, mday: 1, hour: 0, min: 0, sec: 0 };
        }
        tm
    };
    Tm {
        mon: usize::try_from(tm.tm_mon).unwrap_or(0).min(11),
        mday: tm.tm_mday,
        hour: tm.tm_hour,
        min: tm.tm_min,
        sec: tm.tm_sec,
    }
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// cluster-glue's `syslog_timestamp`: `"%3s %02d %02d:%02d:%02d"`.
fn file_stamp(tm: &Tm) -> String {
    format!("{} {:02} {:02}:{:02}:{:02}", MONTHS[tm.mon], tm.mday, tm.hour, tm.min, tm.sec)
}

/// RFC 3164 TIMESTAMP: the day of month is space-padded.
fn syslog_stamp(tm: &Tm) -> String {
    format!("{} {:>2} {:02}:{:02}:{:02}", MONTHS[tm.mon], tm.mday, tm.hour, tm.min, tm.sec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn cfg(dir: &Path) -> LogConfig {
        LogConfig {
            logfile: Some(dir.join("ha-log")),
            debugfile: Some(dir.join("ha-debug")),
            facility: None,
            ident: "halo".into(),
            node: "nodea".into(),
            debug_level: 0,
            stderr: false,
            syslog_socket: dir.join("log.sock"),
        }
    }

    /// Checks `Mmm DD HH:MM:SS` (or `Mmm  D` when `padded`) and returns the rest.
    fn strip_stamp(line: &str, space_padded: bool) -> &str {
        let (stamp, rest) = line.split_at(15);
        let b = stamp.as_bytes();
        assert!(MONTHS.contains(&&stamp[..3]), "{line}");
        assert_eq!(b[3], b' ');
        if space_padded {
            assert!(b[4] == b' ' || b[4].is_ascii_digit(), "{line}");
        } else {
            assert!(b[4].is_ascii_digit(), "{line}");
        }
        assert!(b[5].is_ascii_digit() && b[6] == b' ' && b[9] == b':' && b[12] == b':', "{line}");
        rest
    }

    #[test]
    fn stamps() {
        let tm = Tm { mon: 10, mday: 2, hour: 0, min: 34, sec: 1 };
        assert_eq!(file_stamp(&tm), "Nov 02 00:34:01");
        assert_eq!(syslog_stamp(&tm), "Nov  2 00:34:01");
        assert_eq!(syslog_stamp(&Tm { mday: 22, ..tm }), "Nov 22 00:34:01");
    }

    #[test]
    fn files_get_heartbeat_lines() {
        let t = TempDir::new("log");
        let logger = Logger::new(cfg(&t.0)).expect("logger");
        let pid = std::process::id();
        logger.log(Level::Info, "Link nodeb:eth0 up.");
        logger.log(Level::Debug, "invisible at debug 0");
        logger.set_debug_level(1);
        logger.log(Level::Debug, "seen in debugfile");
        logger.log(Level::Warn, "Late heartbeat");
        logger.log(Level::Crit, "crit");
        let log = std::fs::read_to_string(t.0.join("ha-log")).expect("read log");
        let lines: Vec<&str> = log.lines().map(|l| strip_stamp(l, false)).collect();
        assert_eq!(
            lines,
            vec![
                format!(" nodea halo: [{pid}]: info: Link nodeb:eth0 up."),
                format!(" nodea halo: [{pid}]: WARN: Late heartbeat"),
                format!(" nodea halo: [{pid}]: CRIT: crit"),
            ]
        );
        let dbg = std::fs::read_to_string(t.0.join("ha-debug")).expect("read debug");
        let lines: Vec<&str> = dbg.lines().map(|l| strip_stamp(l, false)).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1], format!(" nodea halo: [{pid}]: debug: seen in debugfile"));
        assert_eq!(logger.failed_writes(), 0);

        // logrotate: move the file away, reopen, and the next line lands in a new file.
        std::fs::rename(t.0.join("ha-log"), t.0.join("ha-log.1")).expect("rotate");
        logger.reopen();
        logger.log(Level::Error, "after rotate");
        let log = std::fs::read_to_string(t.0.join("ha-log")).expect("read new log");
        assert!(log.ends_with(&format!("nodea halo: [{pid}]: ERROR: after rotate\n")), "{log}");
    }

    #[test]
    fn syslog_datagrams() {
        let t = TempDir::new("syslog");
        let mut c = cfg(&t.0);
        c.logfile = None;
        c.debugfile = None;
        c.facility = Some("local0".into());
        // No socket yet: logging works and skips syslog.
        let early = Logger::new(c.clone()).expect("logger without /dev/log");
        early.log(Level::Info, "nobody listens");

        let server = UnixDatagram::bind(&c.syslog_socket).expect("bind fake /dev/log");
        server.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let logger = Logger::new(c.clone()).expect("logger");
        let pid = std::process::id();
        logger.log(Level::Info, "hello");
        logger.log(Level::Error, "bad");
        logger.log(Level::Debug, "dropped at debug 0");
        let recv = || {
            let mut buf = [0u8; 512];
            let n = server.recv(&mut buf).expect("datagram");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        let a = recv();
        assert!(a.starts_with("<134>"), "{a}"); // local0 (16) * 8 + info (6)
        assert_eq!(strip_stamp(&a[5..], true), format!(" halo[{pid}]: hello"));
        let b = recv();
        assert!(b.starts_with("<131>"), "{b}");
        assert_eq!(strip_stamp(&b[5..], true), format!(" halo[{pid}]: bad"));
        server.set_nonblocking(true).expect("nonblocking");
        assert!(server.recv(&mut [0u8; 64]).is_err(), "debug line was not sent");

        // The logger created before the socket existed picks it up on reopen.
        early.reopen();
        early.log(Level::Warn, "now heard");
        server.set_nonblocking(false).expect("blocking");
        let w = recv();
        assert!(w.starts_with("<132>") && w.ends_with("]: now heard"), "{w}");
    }

    #[test]
    fn journal_lines() {
        assert_eq!(journal_line(Level::Info, "Link nodeb:eth0 up."), "<6>info: Link nodeb:eth0 up.\n");
        assert_eq!(journal_line(Level::Warn, "Late heartbeat"), "<4>WARN: Late heartbeat\n");
        assert_eq!(journal_line(Level::Crit, "x"), "<2>CRIT: x\n");
        // The switch leaves the files alone.
        let t = TempDir::new("logjournal");
        let logger = Logger::new(cfg(&t.0)).expect("logger");
        logger.set_stderr_journal(true);
        logger.log(Level::Info, "to the file");
        let log = std::fs::read_to_string(t.0.join("ha-log")).expect("read log");
        assert!(
            log.ends_with(&format!("nodea halo: [{}]: info: to the file\n", std::process::id())),
            "{log}"
        );
    }

    #[test]
    fn bad_config() {
        let t = TempDir::new("logbad");
        let mut c = cfg(&t.0);
        c.facility = Some("local9".into());
        let e = Logger::new(c).expect_err("facility");
        assert_eq!(e.to_string(), "unknown log facility \"local9\"");
        let mut c = cfg(&t.0);
        c.logfile = Some(t.0.join("missing-dir/ha-log"));
        assert!(Logger::new(c).is_err());
        let mut c = cfg(&t.0);
        c.facility = Some("none".into());
        assert!(Logger::new(c).is_ok());
        for name in [
            "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user",
            "uucp", "local7",
        ] {
            assert!(facility_code(name).is_some(), "{name}");
        }
    }

    #[test]
    fn logger_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Logger>();
    }
}
